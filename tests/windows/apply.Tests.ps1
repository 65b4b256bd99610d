# Pester 5 tests of apply.ps1 on a real Windows Server TEST machine (2016, 2019 or 2022).
#
# Run in an elevated Windows PowerShell 5.1 on a test VM — never on a customer's production
# server: the tests add and remove short-lived self-signed certificates in
# Cert:\LocalMachine\My, restart the Windows Time service (W32Time), and with IIS create and
# delete an app pool "cosdoc-certs-pester" and a site "cosdoc-certs-pester" on port 44300.
#
#   Install-Module Pester -MinimumVersion 5.3 -Scope CurrentUser -SkipPublisherCheck
#   Invoke-Pester -Path .\tests\windows\apply.Tests.ps1 -Output Detailed
#
# See docs/windows.md. The lab twin is checked against the same contract on the Python side
# (tests/test_windows_apply_contract.py), so both answer alike.

BeforeAll {
    $script:ApplyPath = Join-Path -Path $PSScriptRoot -ChildPath '..\..\cosdoc_certs\windows\scripts\apply.ps1'

    function Invoke-Apply {
        # Runs apply.ps1 with the actions (hashtables) and returns the parsed result document.
        param([object[]] $Actions, [string[]] $PfxFiles = @(), [System.Security.SecureString] $PfxPassword = $null, [string[]] $FileContents = @())
        $json = ConvertTo-Json -InputObject @($Actions) -Depth 5 -Compress
        $arguments = @{ Actions = $json; RunId = 'pester'; PfxFiles = $PfxFiles; FileContents = $FileContents }
        if ($null -ne $PfxPassword) { $arguments.PfxPassword = $PfxPassword }
        $output = @(& $script:ApplyPath @arguments)
        $output.Count | Should -Be 1
        $output[0] | Should -BeOfType [string]
        return $output[0] | ConvertFrom-Json
    }

    function Get-FileSha256 {
        param([string] $Path)
        return (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash
    }

    function New-TestCertificate {
        # An exportable self-signed certificate with a CNG key, valid for two days.
        param([string] $Name)
        return New-SelfSignedCertificate -Subject "CN=$Name" -CertStoreLocation 'Cert:\LocalMachine\My' `
            -Provider 'Microsoft Software Key Storage Provider' -KeyExportPolicy Exportable -NotAfter (Get-Date).AddDays(2)
    }

    function Remove-TestCertificate {
        param([string] $Thumbprint)
        $path = "Cert:\LocalMachine\My\$Thumbprint"
        if (Test-Path -LiteralPath $path) { Remove-Item -LiteralPath $path -DeleteKey }
    }
}

Describe 'apply.ps1 writes its result document on every way out' {
    It 'answers an unknown action with the error set and nothing run' {
        $result = Invoke-Apply -Actions @(@{ action = 'format-disk' })
        $result.error | Should -Match "'format-disk'"
        $result.completed | Should -Be 0
        @($result.results).Count | Should -Be 0
    }

    It 'answers a write-file without its -FileContents entry with the error set' {
        $result = Invoke-Apply -Actions @(@{ action = 'write-file'; path = (Join-Path $TestDrive 'a.json'); content_index = 0; expected_sha256 = ('AB' * 32) })
        $result.error | Should -Match '-FileContents has no file number 0'
    }
}

Describe 'apply.ps1 files: compare-and-swap, backup, restore' {
    BeforeEach {
        $script:File = Join-Path -Path $TestDrive -ChildPath 'appsettings.json'
        $script:Original = [byte[]](0xEF, 0xBB, 0xBF) + [Text.Encoding]::UTF8.GetBytes("{`r`n  `"A`": `"1`"`r`n}`r`n")
        [IO.File]::WriteAllBytes($script:File, $script:Original)
        $script:New = [Text.Encoding]::UTF8.GetBytes('{"A": "2"}')
    }

    It 'writes the new bytes after a backup beside the file, and says so in one JSON document' {
        $result = Invoke-Apply -Actions @(@{
                action = 'write-file'; path = $script:File
                content_index = 0; expected_sha256 = (Get-FileSha256 $script:File)
            }) -FileContents @([Convert]::ToBase64String($script:New))
        $result.schema_version | Should -Be 1
        , $result.results | Should -BeOfType [object[]]
        $result.completed | Should -Be 1
        $result.failed_index | Should -BeNullOrEmpty
        $result.results[0].ok | Should -BeTrue
        $backup = "$($script:File).cosdoc-certs-pester.bak"
        $result.results[0].before.backup | Should -Be $backup
        ([IO.File]::ReadAllBytes($backup) -join ',') | Should -Be ($script:Original -join ',')
        ([IO.File]::ReadAllBytes($script:File) -join ',') | Should -Be ($script:New -join ',')
    }

    It 'writes and restores a ReadOnly, Hidden file and puts its attributes back' {
        $attributes = [IO.FileAttributes]::ReadOnly -bor [IO.FileAttributes]::Hidden
        (Get-Item -LiteralPath $script:File -Force).Attributes = $attributes
        $result = Invoke-Apply -Actions @(@{
                action = 'write-file'; path = $script:File; content_index = 0; expected_sha256 = (Get-FileSha256 $script:File)
            }) -FileContents @([Convert]::ToBase64String($script:New))
        $result.results[0].ok | Should -BeTrue
        (Get-Item -LiteralPath $script:File -Force).Attributes | Should -Be $attributes
        $backup = "$($script:File).cosdoc-certs-pester.bak"
        $restored = Invoke-Apply -Actions @(@{ action = 'restore-file'; path = $script:File; backup = $backup; expected_sha256 = (Get-FileSha256 $script:File) })
        $restored.results[0].ok | Should -BeTrue
        ([IO.File]::ReadAllBytes($script:File) -join ',') | Should -Be ($script:Original -join ',')
        (Get-Item -LiteralPath $script:File -Force).Attributes | Should -Be $attributes
    }

    It 'refuses a file whose hash changed since planning, before running any action' {
        $result = Invoke-Apply -Actions @(
            @{ action = 'restore-file'; path = (Join-Path $TestDrive 'other.txt'); backup = (Join-Path $TestDrive 'none.bak'); expected_sha256 = $null },
            @{ action = 'write-file'; path = $script:File; content_index = 0; expected_sha256 = ('AB' * 32) }
        ) -FileContents @('e30=')
        $result.completed | Should -Be 0
        $result.failed_index | Should -Be 1
        $result.results[0].message | Should -Match 'changed since planning'
        ([IO.File]::ReadAllBytes($script:File) -join ',') | Should -Be ($script:Original -join ',')
        Test-Path -LiteralPath "$($script:File).cosdoc-certs-pester.bak" | Should -BeFalse
    }

    It 'restores the original bytes from the backup, only over the expected bytes' {
        $null = Invoke-Apply -Actions @(@{
                action = 'write-file'; path = $script:File
                content_index = 0; expected_sha256 = (Get-FileSha256 $script:File)
            }) -FileContents @([Convert]::ToBase64String($script:New))
        $backup = "$($script:File).cosdoc-certs-pester.bak"
        $refused = Invoke-Apply -Actions @(@{ action = 'restore-file'; path = $script:File; backup = $backup; expected_sha256 = ('AB' * 32) })
        $refused.results[0].ok | Should -BeFalse
        $restored = Invoke-Apply -Actions @(@{ action = 'restore-file'; path = $script:File; backup = $backup; expected_sha256 = (Get-FileSha256 $script:File) })
        $restored.results[0].ok | Should -BeTrue
        $restored.results[0].before.restored | Should -BeTrue
        ([IO.File]::ReadAllBytes($script:File) -join ',') | Should -Be ($script:Original -join ',')
    }

}

Describe 'apply.ps1 certificates: import, key read grant' {
    BeforeAll {
        $script:Source = New-TestCertificate -Name 'cosdoc-certs pester import'
        $script:Thumbprint = $script:Source.Thumbprint
        $script:Password = ConvertTo-SecureString -String ([guid]::NewGuid().ToString()) -AsPlainText -Force
        $pfxFile = Join-Path -Path $TestDrive -ChildPath 'import.pfx'
        Export-PfxCertificate -Cert $script:Source -FilePath $pfxFile -Password $script:Password | Out-Null
        $script:Pfx = [Convert]::ToBase64String([IO.File]::ReadAllBytes($pfxFile))
        Remove-Item -LiteralPath $pfxFile
        Remove-TestCertificate -Thumbprint $script:Thumbprint
    }

    AfterAll { Remove-TestCertificate -Thumbprint $script:Thumbprint }

    It 'fails a wrong password like Import-PfxCertificate, importing nothing' {
        $wrong = ConvertTo-SecureString -String 'not-the-password' -AsPlainText -Force
        $result = Invoke-Apply -Actions @(@{ action = 'import-pfx'; index = 0; thumbprints = @($script:Thumbprint) }) -PfxFiles @($script:Pfx) -PfxPassword $wrong
        $result.failed_index | Should -Be 0
        $result.results[0].message | Should -Not -BeNullOrEmpty
        Test-Path -LiteralPath "Cert:\LocalMachine\My\$($script:Thumbprint)" | Should -BeFalse
    }

    It 'imports the PFX into LocalMachine\My in the provider it names and leaves no temporary PFX file' {
        $import = @{ action = 'import-pfx'; index = 0; thumbprints = @($script:Thumbprint); key_provider = 'Microsoft Software Key Storage Provider'; authorities = @() }
        $result = Invoke-Apply -Actions @($import) -PfxFiles @($script:Pfx) -PfxPassword $script:Password
        $result.results[0].ok | Should -BeTrue
        $result.results[0].before.key_provider | Should -Be 'Microsoft Software Key Storage Provider'
        , $result.results[0].before.present | Should -BeOfType [object[]]
        (Get-Item -LiteralPath "Cert:\LocalMachine\My\$($script:Thumbprint)").HasPrivateKey | Should -BeTrue
        @(Get-ChildItem -Path ([IO.Path]::GetTempPath()) -Filter 'cosdoc-certs-pester-*.pfx').Count | Should -Be 0
    }

    It 'grants read on the key file and says whether the account could read before' {
        $grant = @{ action = 'grant-read'; thumbprint = $script:Thumbprint; account = 'NETWORK SERVICE'; sid = 'S-1-5-20' }
        $first = Invoke-Apply -Actions @($grant)
        $first.results[0].ok | Should -BeTrue
        $first.results[0].before.key_file | Should -BeLike "$env:ProgramData\Microsoft\Crypto\Keys\*"
        $first.results[0].before.could_read | Should -BeFalse
        $rules = (Get-Acl -LiteralPath $first.results[0].before.key_file).GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier])
        @($rules | ForEach-Object { $_.IdentityReference.Value }) | Should -Contain 'S-1-5-20'
        $second = Invoke-Apply -Actions @($grant)
        $second.results[0].before.could_read | Should -BeTrue
    }

    It 'fails a grant for a certificate that is not in the store' {
        $result = Invoke-Apply -Actions @(@{ action = 'grant-read'; thumbprint = ('AB' * 20); account = 'NETWORK SERVICE'; sid = 'S-1-5-20' })
        $result.results[0].ok | Should -BeFalse
    }

    It 'does not import a certificate again that has its key by now: key file and grants stay' {
        $grant = @{ action = 'grant-read'; thumbprint = $script:Thumbprint; account = 'NT AUTHORITY\NETWORK SERVICE' }
        $keyFile = (Invoke-Apply -Actions @($grant)).results[0].before.key_file
        $import = @{ action = 'import-pfx'; index = 0; thumbprints = @($script:Thumbprint); key_provider = $null; authorities = @() }
        $result = Invoke-Apply -Actions @($import) -PfxFiles @($script:Pfx) -PfxPassword $script:Password
        $result.results[0].ok | Should -BeTrue
        $result.results[0].message | Should -BeLike '*not imported again*'
        $after = (Invoke-Apply -Actions @($grant)).results[0].before
        $after.key_file | Should -Be $keyFile
        $after.could_read | Should -BeTrue
    }

    It 'fails, and removes the certificate again, when its key lands in another provider' {
        Remove-TestCertificate -Thumbprint $script:Thumbprint
        $import = @{ action = 'import-pfx'; index = 0; thumbprints = @($script:Thumbprint); key_provider = 'Microsoft Enhanced RSA and AES Cryptographic Provider'; authorities = @() }
        $result = Invoke-Apply -Actions @($import) -PfxFiles @($script:Pfx) -PfxPassword $script:Password
        $result.failed_index | Should -Be 0
        $result.results[0].message | Should -BeLike '*not Microsoft Enhanced RSA and AES Cryptographic Provider as planned*'
        Test-Path -LiteralPath "Cert:\LocalMachine\My\$($script:Thumbprint)" | Should -BeFalse
    }
}

Describe 'apply.ps1 services: restart, stop at the first failure' {
    It 'restarts a service and reports its state before' {
        $result = Invoke-Apply -Actions @(@{ action = 'restart-service'; name = 'W32Time' })
        $result.results[0].ok | Should -BeTrue
        $result.results[0].before.state | Should -Not -BeNullOrEmpty
        (Get-Service -Name 'W32Time').Status | Should -Be 'Running'
    }

    It 'stops at the first failure and runs nothing after it' {
        $file = Join-Path -Path $TestDrive -ChildPath 'after.txt'
        [IO.File]::WriteAllText($file, 'kept')
        $result = Invoke-Apply -Actions @(
            @{ action = 'restart-service'; name = 'cosdoc-certs-no-such-service' },
            @{ action = 'write-file'; path = $file; content_index = 0; expected_sha256 = (Get-FileSha256 $file) }
        ) -FileContents @('e30=')
        $result.failed_index | Should -Be 0
        @($result.results).Count | Should -Be 1
        $result.results[0].message | Should -Match 'cosdoc-certs-no-such-service'
        [IO.File]::ReadAllText($file) | Should -Be 'kept'
    }
}

Describe 'apply.ps1 IIS: app pool and HTTPS binding' -Skip:($null -eq (Get-Module -ListAvailable -Name WebAdministration)) {
    BeforeAll {
        Import-Module WebAdministration
        $script:Pool = 'cosdoc-certs-pester'
        $script:Old = New-TestCertificate -Name 'cosdoc-certs pester old'
        $script:New = New-TestCertificate -Name 'cosdoc-certs pester new'
        New-WebAppPool -Name $script:Pool | Out-Null
        New-Website -Name $script:Pool -Port 44300 -Ssl -PhysicalPath $TestDrive -ApplicationPool $script:Pool | Out-Null
        (Get-WebBinding -Name $script:Pool -Protocol https).AddSslCertificate($script:Old.Thumbprint, 'my')
    }

    AfterAll {
        if (Test-Path -LiteralPath 'IIS:\SslBindings\0.0.0.0!44300') { Remove-Item -LiteralPath 'IIS:\SslBindings\0.0.0.0!44300' }
        Remove-Website -Name $script:Pool
        Remove-WebAppPool -Name $script:Pool
        Remove-TestCertificate -Thumbprint $script:Old.Thumbprint
        Remove-TestCertificate -Thumbprint $script:New.Thumbprint
    }

    It 'starts a stopped pool instead of recycling it' {
        Stop-WebAppPool -Name $script:Pool
        $result = Invoke-Apply -Actions @(@{ action = 'recycle-pool'; name = $script:Pool })
        $result.results[0].ok | Should -BeTrue
        $result.results[0].before.state | Should -Be 'Stopped'
        (Get-WebAppPoolState -Name $script:Pool).Value | Should -Be 'Started'
    }

    It 'rebinds the non-SNI binding and reports the previous certificate' {
        $binding = (Get-WebBinding -Name $script:Pool -Protocol https).bindingInformation
        $result = Invoke-Apply -Actions @(@{ action = 'set-binding'; site = $script:Pool; binding = $binding; thumbprint = $script:New.Thumbprint })
        $result.results[0].ok | Should -BeTrue
        $result.results[0].before.thumbprint | Should -Be $script:Old.Thumbprint
        (Get-Item -LiteralPath 'IIS:\SslBindings\0.0.0.0!44300').Thumbprint | Should -Be $script:New.Thumbprint
    }

    It 'keeps the http.sys settings of the entry (client certificates, CTL store) when rebinding' {
        $key = 'HKLM:\SYSTEM\CurrentControlSet\Services\HTTP\Parameters\SslBindingInfo\0.0.0.0:44300'
        & netsh.exe http delete sslcert ipport=0.0.0.0:44300 | Out-Null
        & netsh.exe http add sslcert ipport=0.0.0.0:44300 "certhash=$($script:New.Thumbprint)" 'appid={4dc3e181-e14b-4a21-b022-59fc669b0914}' certstorename=MY clientcertnegotiation=enable verifyclientcertrevocation=disable sslctlstorename=ClientAuthIssuer | Out-Null
        $LASTEXITCODE | Should -Be 0
        $settings = Get-ItemProperty -LiteralPath $key
        $binding = (Get-WebBinding -Name $script:Pool -Protocol https).bindingInformation
        $result = Invoke-Apply -Actions @(@{ action = 'set-binding'; site = $script:Pool; binding = $binding; thumbprint = $script:Old.Thumbprint })
        $result.results[0].ok | Should -BeTrue
        $result.results[0].before.settings | Should -Contain 'DefaultSslCtlStoreName=ClientAuthIssuer'
        $after = Get-ItemProperty -LiteralPath $key
        foreach ($name in 'DefaultFlags', 'DefaultSslCertCheckMode', 'DefaultSslCtlStoreName') {
            $after.$name | Should -Be $settings.$name
        }
        ([BitConverter]::ToString([byte[]] $after.SslCertHash) -replace '-', '') | Should -Be $script:Old.Thumbprint
    }
}

Describe 'apply.ps1 services: bounded stop and start' {
    It 'restarts a service through ServiceController and reports no stuck process' {
        $result = Invoke-Apply -Actions @(@{ action = 'restart-service'; name = 'W32Time' })
        $result.results[0].ok | Should -BeTrue
        $result.results[0].before.stuck_process | Should -BeNullOrEmpty
    }
}

Describe 'apply.ps1 ends a complete run with the post-state gather.ps1 reads' {
    BeforeAll {
        $script:GatherText = [IO.File]::ReadAllText((Join-Path -Path $PSScriptRoot -ChildPath '..\..\cosdoc_certs\windows\scripts\gather.ps1'))
        $script:PostFile = Join-Path -Path $TestDrive -ChildPath 'post.json'

        function Invoke-ApplyWithPostState {
            # One write-file, then the post-state read with -PostStateScript $ScriptText.
            param([string] $ScriptText)
            $actions = ConvertTo-Json -InputObject @(@{
                    action = 'write-file'; path = $script:PostFile; content_index = 0; expected_sha256 = (Get-FileSha256 $script:PostFile)
                }) -Depth 5 -Compress
            $output = @(& $script:ApplyPath -Actions $actions -RunId 'pester' -FileContents @('e30=') -PostStateScript $ScriptText -ServicePatterns @('W32Time') -ConfigFiles @('appsettings.json'))
            $output.Count | Should -Be 1
            return $output[0] | ConvertFrom-Json
        }
    }

    BeforeEach {
        [IO.File]::WriteAllBytes($script:PostFile, [Text.Encoding]::UTF8.GetBytes('{"A": "1"}'))
    }

    It 'returns the JSON document gather.ps1 wrote, as text, after the actions' {
        $result = Invoke-ApplyWithPostState -ScriptText $script:GatherText
        $result.completed | Should -Be 1
        $result.post_state_error | Should -BeNullOrEmpty
        $facts = $result.post_state | ConvertFrom-Json
        $facts.schemaVersion | Should -Be 2
        $facts.computerName | Should -Be $env:COMPUTERNAME
        @($facts.services | Where-Object { $_.name -eq 'W32Time' }).Count | Should -Be 1
    }

    It 'reads no post-state with a script that is not gather.ps1' {
        $result = Invoke-ApplyWithPostState -ScriptText "# cosdoc-certs-script: other`nWrite-Output 'x'"
        $result.completed | Should -Be 1
        $result.post_state | Should -BeNullOrEmpty
        $result.post_state_error | Should -Match 'not gather.ps1'
    }
}
