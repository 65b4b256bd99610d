# Pester 5 tests of gather.ps1 on a real Windows Server TEST machine (2016, 2019 or 2022).
#
# Run in an elevated Windows PowerShell 5.1 on a test VM (never on a customer's production
# server: the key-storage tests add and remove two self-signed certificates in
# Cert:\LocalMachine\My):
#
#   Install-Module Pester -MinimumVersion 5.3 -Scope CurrentUser -SkipPublisherCheck
#   Invoke-Pester -Path .\tests\windows\gather.Tests.ps1 -Output Detailed
#
# See docs/windows.md. The same install-folder table is checked on the Python side in
# tests/test_facts_contract.py, so the script and its lab twin agree.

BeforeAll {
    $script:GatherPath = Join-Path -Path $PSScriptRoot -ChildPath '..\..\cosdoc_certs\windows\scripts\gather.ps1'
    $script:ScriptAst = [System.Management.Automation.Language.Parser]::ParseFile(
        (Resolve-Path -LiteralPath $script:GatherPath).Path, [ref] $null, [ref] $null)

    function Import-GatherFunction {
        # Defines one of gather.ps1's helper functions in this scope, taken from its syntax tree.
        param([string] $Name)
        $definition = $script:ScriptAst.Find({
                param($node)
                $node -is [System.Management.Automation.Language.FunctionDefinitionAst] -and $node.Name -eq $Name
            }, $true)
        if ($null -eq $definition) { throw "gather.ps1 has no function $Name" }
        . ([scriptblock]::Create($definition.Extent.Text))
        Set-Item -Path "function:global:$Name" -Value (Get-Item -Path "function:$Name").ScriptBlock
    }

    function Invoke-Gather {
        param([string[]] $ServicePatterns = @('*'), [string[]] $ConfigFiles = @('appsettings.json'))
        $output = @(& $script:GatherPath -ServicePatterns $ServicePatterns -ConfigFiles $ConfigFiles)
        $output.Count | Should -Be 1
        $output[0] | Should -BeOfType [string]
        return $output[0] | ConvertFrom-Json
    }
}

Describe 'gather.ps1 output' {
    BeforeAll {
        $script:Facts = Invoke-Gather -ServicePatterns @('W32Time', 'WinRM')
    }

    It 'is schema version 2 from this computer' {
        $script:Facts.schemaVersion | Should -Be 2
        $script:Facts.computerName | Should -Be $env:COMPUTERNAME
        $script:Facts.gatheredAt | Should -Match '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$'
    }

    It 'reports the services matching the patterns, with their account and install folder' {
        $winrm = @($script:Facts.services | Where-Object { $_.name -eq 'WinRM' })
        $winrm.Count | Should -Be 1
        $winrm[0].account | Should -Be (Get-CimInstance Win32_Service -Filter "Name='WinRM'").StartName
        $winrm[0].installFolder | Should -Be "$env:SystemRoot\system32"
    }

    It 'resolves every service account to a SID with the server''s own name' {
        $winrm = @($script:Facts.services | Where-Object { $_.name -eq 'WinRM' })[0]
        $winrm.identity.sid | Should -Be 'S-1-5-20'  # StartName 'NT AUTHORITY\NetworkService'
        $expected = (New-Object System.Security.Principal.SecurityIdentifier('S-1-5-20')).Translate([System.Security.Principal.NTAccount]).Value
        $winrm.identity.name | Should -Be $expected  # NT-MYNDIGHET\NETTVERKSTJENESTE in Norwegian
        $winrm.identity.error | Should -BeNullOrEmpty
    }

    It 'keeps a one-element array an array' {
        $only = Invoke-Gather -ServicePatterns @('WinRM')
        , $only.services | Should -BeOfType [object[]]
        $only.services.Count | Should -Be 1
    }

    It 'lists every certificate of LocalMachine\My with its DER' {
        $store = @(Get-ChildItem -Path 'Cert:\LocalMachine\My')
        @($script:Facts.certificates).Count | Should -Be $store.Count
        foreach ($certificate in $script:Facts.certificates) {
            $bytes = [Convert]::FromBase64String($certificate.der)
            $parsed = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2 -ArgumentList (, $bytes)
            $parsed.Thumbprint | Should -Be $certificate.thumbprint
            $certificate.notAfter | Should -Match 'Z$'
        }
    }

    It 'reports IIS when it is installed and WebAdministration is there' {
        $hasModule = $null -ne (Get-Module -ListAvailable -Name WebAdministration)
        $hasIis = $null -ne (Get-Service -Name W3SVC -ErrorAction SilentlyContinue)
        $script:Facts.iisPresence.module | Should -Be $hasModule
        $script:Facts.iisPresence.installed | Should -Be $hasIis
        ($null -ne $script:Facts.iis) | Should -Be ($hasIis -and $hasModule)
    }

    It 'returns what netsh http show sslcert printed' {
        $script:Facts.httpSys.exitCode | Should -Be 0
        $script:Facts.httpSys.output | Should -Not -BeNullOrEmpty
    }

    It 'reports every HTTPS binding of IIS' -Skip:($null -eq (Get-Module -ListAvailable -Name WebAdministration)) {
        Import-Module WebAdministration
        $expected = @(Get-WebBinding -Protocol https).Count
        @($script:Facts.iis.bindings).Count | Should -Be $expected
    }

    It 'has the hash of every HTTPS binding with a certificate in the netsh text' -Skip:($null -eq (Get-Module -ListAvailable -Name WebAdministration)) {
        foreach ($binding in @($script:Facts.iis.bindings | Where-Object { $_.certificateHash })) {
            $script:Facts.httpSys.output | Should -Match $binding.certificateHash
        }
    }
}

Describe 'key storage: CNG and CAPI key files and their readers' {
    BeforeAll {
        $script:Cng = New-SelfSignedCertificate -Subject 'CN=cosdoc-certs pester CNG' -CertStoreLocation 'Cert:\LocalMachine\My' `
            -Provider 'Microsoft Software Key Storage Provider' -NotAfter (Get-Date).AddDays(2)
        $script:Capi = New-SelfSignedCertificate -Subject 'CN=cosdoc-certs pester CAPI' -CertStoreLocation 'Cert:\LocalMachine\My' `
            -Provider 'Microsoft Enhanced RSA and AES Cryptographic Provider' -KeySpec KeyExchange -NotAfter (Get-Date).AddDays(2)
        $script:Facts = Invoke-Gather -ServicePatterns @()
    }

    AfterAll {
        foreach ($certificate in @($script:Cng, $script:Capi)) {
            if ($null -ne $certificate) { Remove-Item -LiteralPath "Cert:\LocalMachine\My\$($certificate.Thumbprint)" -DeleteKey }
        }
    }

    It 'finds a CNG key under Crypto\Keys' {
        $fact = $script:Facts.certificates | Where-Object { $_.thumbprint -eq $script:Cng.Thumbprint }
        $fact.keyStorage | Should -Be 'CNG'
        $fact.keyFile | Should -BeLike "$env:ProgramData\Microsoft\Crypto\Keys\*"
        $fact.keyFolder | Should -Be 'Crypto\Keys'
        Test-Path -LiteralPath $fact.keyFile | Should -BeTrue
        @($fact.readers | ForEach-Object { $_.sid }) | Should -Contain 'S-1-5-18'
    }

    It 'finds a CAPI key under Crypto\RSA\MachineKeys, whatever .NET opened it as' {
        # .NET 4.6+ may open it through CNG (keyStorage CNG): the folder is what counts.
        $fact = $script:Facts.certificates | Where-Object { $_.thumbprint -eq $script:Capi.Thumbprint }
        $fact.keyFile | Should -BeLike "$env:ProgramData\Microsoft\Crypto\RSA\MachineKeys\*"
        $fact.keyFolder | Should -Be 'Crypto\RSA\MachineKeys'
        $fact.keyError | Should -BeNullOrEmpty
        Test-Path -LiteralPath $fact.keyFile | Should -BeTrue
    }
}

Describe 'Get-InstallFolder' {
    BeforeAll { Import-GatherFunction -Name 'Get-InstallFolder' }

    It 'takes the executable folder of <PathName>' -TestCases @(
        @{ PathName = '"C:\Program Files\DIPS\Digihelse\Digihelse.exe" -service'; Expected = 'C:\Program Files\DIPS\Digihelse' }
        @{ PathName = 'C:\Program Files\DIPS\KPR Innsending\KPR.Innsending.exe'; Expected = 'C:\Program Files\DIPS\KPR Innsending' }
        @{ PathName = 'C:\Program Files\DIPS\KPR Innsending\KPR.Innsending.exe --urls http://*:5000'; Expected = 'C:\Program Files\DIPS\KPR Innsending' }
        @{ PathName = 'D:\CosDoc\svc.EXE'; Expected = 'D:\CosDoc' }
        @{ PathName = '"D:\CosDoc\Tjeneste med mellomrom\svc.exe"'; Expected = 'D:\CosDoc\Tjeneste med mellomrom' }
        @{ PathName = 'C:\tools\runner.bat arg'; Expected = 'C:\tools' }
        @{ PathName = '"C:\Program Files\dotnet\dotnet.exe" "D:\DIPS\Adressering\App.dll" --service'; Expected = 'D:\DIPS\Adressering' }
        @{ PathName = 'C:\Program Files\dotnet\dotnet.exe D:\DIPS\Adr\App.dll'; Expected = 'D:\DIPS\Adr' }
        @{ PathName = 'C:\Windows\System32\cmd.exe /c "D:\DIPS\Wrapped\start.cmd"'; Expected = 'D:\DIPS\Wrapped' }
        @{ PathName = '"C:\Program Files\dotnet\dotnet.exe" --info'; Expected = 'C:\Program Files\dotnet' }
    ) {
        param($PathName, $Expected)
        Get-InstallFolder -PathName $PathName | Should -Be $Expected
    }

    It 'prefers nssm''s AppDirectory' {
        Get-InstallFolder -PathName 'C:\tools\nssm.exe' -AppDirectory 'D:\DIPS\KPR' | Should -Be 'D:\DIPS\KPR'
    }
}

Describe 'Resolve-Identity' {
    BeforeAll { Import-GatherFunction -Name 'Resolve-Identity' }

    It 'resolves .\<local account> as COMPUTERNAME\<account>' {
        $administrator = (New-Object System.Security.Principal.SecurityIdentifier('S-1-5-32-544')).Translate([System.Security.Principal.NTAccount]).Value
        (Resolve-Identity -Sid 'S-1-5-32-544').name | Should -Be $administrator
        $local = Get-LocalUser | Select-Object -First 1
        (Resolve-Identity -Name ('.\' + $local.Name)).sid | Should -Be $local.SID.Value
    }

    It 'reports a name that does not resolve instead of failing' {
        $identity = Resolve-Identity -Name 'NT AUTHORITY\NetworkService'
        $identity.sid | Should -BeNullOrEmpty
        $identity.error | Should -Not -BeNullOrEmpty
    }
}

Describe 'Get-ConfigFileFacts' {
    BeforeAll {
        Import-GatherFunction -Name 'Get-ConfigFileFacts'
        Import-GatherFunction -Name 'Read-ConfigFile'
    }

    It 'returns the bytes of present files and marks missing ones' {
        $folder = Join-Path -Path $TestDrive -ChildPath 'Digihelse'
        New-Item -ItemType Directory -Path $folder | Out-Null
        $bytes = [byte[]](0xEF, 0xBB, 0xBF) + [Text.Encoding]::UTF8.GetBytes("{`r`n}`r`n")
        [IO.File]::WriteAllBytes((Join-Path $folder 'appsettings.json'), $bytes)
        $files = Get-ConfigFileFacts -Folders @($folder, $folder) -RelativePaths @('appsettings.json', 'missing.json')
        $files.Count | Should -Be 2
        $files[0].exists | Should -BeTrue
        ([Convert]::FromBase64String($files[0].content) -join ',') | Should -Be ($bytes -join ',')
        $files[1].exists | Should -BeFalse
        $files[1].content | Should -BeNullOrEmpty
    }

    It 'reports a folder on a drive that does not exist as missing, without stopping' {
        $drive = @([char[]]([int][char]'Q'..[int][char]'Z') | Where-Object { -not (Test-Path -LiteralPath "${_}:\") })[0]
        $files = Get-ConfigFileFacts -Folders @("${drive}:\DIPS\Gone") -RelativePaths @('appsettings.json')
        $files[0].exists | Should -BeFalse
        $files[0].error | Should -BeNullOrEmpty
    }

    It 'reports a locked file with its error' {
        $path = Join-Path -Path $TestDrive -ChildPath 'locked.json'
        [IO.File]::WriteAllText($path, '{}')
        $stream = [IO.File]::Open($path, 'Open', 'ReadWrite', 'None')
        try {
            $file = Read-ConfigFile -Path $path
        } finally {
            $stream.Dispose()
        }
        $file.exists | Should -BeTrue
        $file.error | Should -BeLike 'System.IO.IOException: *'
    }
}
