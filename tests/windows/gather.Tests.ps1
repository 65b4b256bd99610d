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

    It 'is schema version 1 from this computer' {
        $script:Facts.schemaVersion | Should -Be 1
        $script:Facts.computerName | Should -Be $env:COMPUTERNAME
        $script:Facts.gatheredAt | Should -Match '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$'
    }

    It 'reports the services matching the patterns, with their account and install folder' {
        $winrm = @($script:Facts.services | Where-Object { $_.name -eq 'WinRM' })
        $winrm.Count | Should -Be 1
        $winrm[0].account | Should -Be (Get-CimInstance Win32_Service -Filter "Name='WinRM'").StartName
        $winrm[0].installFolder | Should -Be "$env:SystemRoot\system32"
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

    It 'reports IIS when WebAdministration is installed' {
        $hasIis = $null -ne (Get-Module -ListAvailable -Name WebAdministration)
        ($null -ne $script:Facts.iis) | Should -Be $hasIis
    }

    It 'reports every HTTPS binding of IIS' -Skip:($null -eq (Get-Module -ListAvailable -Name WebAdministration)) {
        Import-Module WebAdministration
        $expected = @(Get-WebBinding -Protocol https).Count
        @($script:Facts.iis.bindings).Count | Should -Be $expected
    }

    It 'finds the http.sys entry of every HTTPS binding that has a certificate' -Skip:($null -eq (Get-Module -ListAvailable -Name WebAdministration)) {
        $served = @($script:Facts.iis.sslBindings | ForEach-Object { $_.thumbprint.ToUpperInvariant() })
        foreach ($binding in @($script:Facts.iis.bindings | Where-Object { $_.certificateHash })) {
            $served | Should -Contain $binding.certificateHash.ToUpperInvariant()
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
        Test-Path -LiteralPath $fact.keyFile | Should -BeTrue
        $fact.readers | Should -Contain 'NT AUTHORITY\SYSTEM'
    }

    It 'finds a CAPI key under Crypto\RSA\MachineKeys' {
        $fact = $script:Facts.certificates | Where-Object { $_.thumbprint -eq $script:Capi.Thumbprint }
        $fact.keyStorage | Should -Be 'CAPI'
        $fact.keyFile | Should -BeLike "$env:ProgramData\Microsoft\Crypto\RSA\MachineKeys\*"
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
    ) {
        param($PathName, $Expected)
        Get-InstallFolder -PathName $PathName | Should -Be $Expected
    }
}

Describe 'Get-ConfigFileFacts' {
    BeforeAll { Import-GatherFunction -Name 'Get-ConfigFileFacts' }

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
}
